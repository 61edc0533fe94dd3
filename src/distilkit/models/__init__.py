"""Building teachers and students (BERT family, Hugging Face ``BertForSequenceClassification``)."""
